"""The recording pipeline: observations and sessions recorded, and what follows from them."""
