"""Replays of the bot's strategy on recorded Polymarket history (issue 21). ``bot.replay.history``: the data part,
resolved markets from Gamma and their tokens' price histories, downloaded once into a local cache (docs/replay.md)."""
