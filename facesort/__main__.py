from facesort.cli import main

main()
