"""Input and output: loading and writing datasets (`files`), the run outputs, selection folders, label files."""
