"""Dataset builders (``python -m care_verl.data``) and the shared prompt template.

Modules: `prompt` (template), `build` (RL/SFT builders), `sources` (one adapter per dataset
schema), `images`, `dedup`, `readers`, `report`, `schema`. Nothing is imported here, so
``import care_verl.data.prompt`` stays cheap.
"""
