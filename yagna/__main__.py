from yagna.cli.main import main

main()
