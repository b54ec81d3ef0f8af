"""The foundations every lesson and the tool stand on: the profile (one setting decides every
size), official file formats, images, the cache, the metric, search, networks, checkpoints and
global descriptors. Imports nothing from the other rooms."""
