from raycl.cli import main

raise SystemExit(main())
