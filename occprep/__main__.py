from occprep.cli import main

main()
