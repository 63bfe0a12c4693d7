from research.sweeps import cli

cli.main()
