from telex.cli import main

raise SystemExit(main())
