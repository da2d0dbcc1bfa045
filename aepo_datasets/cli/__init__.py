"""Entry points of the `aepo` command: the dispatcher (`main`) and one module per subcommand."""
