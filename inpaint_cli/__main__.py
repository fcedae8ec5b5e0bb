from inpaint_cli.cli.app import main

main()
