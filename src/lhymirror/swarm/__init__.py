"""Sharing over BitTorrent (the optional ``swarm`` extra): torrents, seeding, swarm downloads."""
