"""Unity Perception synthetic datasets (legacy captures 0.0.1/0.0.2 and SOLO) as nuScenes tables.

Readers (`perception`, `solo`) stream compact `Capture` records, `convert` holds the axis and
camera rules, `totables` builds the 13 nuScenes tables plus CAN bus pose messages, and
`validate` checks a dataset against the schema's contract.
"""
