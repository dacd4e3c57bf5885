from ftedge.cli import main

raise SystemExit(main())
