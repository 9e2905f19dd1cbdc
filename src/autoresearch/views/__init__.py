"""The views: read-only pictures of a workspace for people and scripts.

- `snapshot`: one typed `Snapshot` of a workspace or a results file (History's numbers, git,
  the running experiment, the loop), the source of every view;
- `terminal`: `autoresearch status`;
- `report`: progress.png and report.md;
- `dashboard`: the live local web page.

Views read results.tsv through History and the state folder through its typed records;
they never import the engine.
"""
