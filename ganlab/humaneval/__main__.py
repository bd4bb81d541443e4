from ganlab.humaneval.cli import main

main()
