"""Per-dataset adapters: one module per source schema, each mapping a raw row to an example.

Adapters raise `care_verl.data.report.BadRow` for rows they cannot use; the builder records
them with file and row number. `care_verl.data.build` picks the adapter by source name.
"""
