from linda_desktop.cli import main

raise SystemExit(main())
