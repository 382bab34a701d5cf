"""Per-scene shards of a nuScenes-format version, for builds that map over scene groups (`occprep shard`,
`create-infos --shards`).

`files` says what a shard folder holds, `write` makes one in a single streaming pass over the tables,
`read` gives a scene group's tables and CAN bus back as the records the stages take.
"""
