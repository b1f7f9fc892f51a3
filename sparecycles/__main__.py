import sys

from sparecycles.launch import main

sys.exit(main())
