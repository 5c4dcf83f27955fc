import sys

from milvus_rag.cli import main

sys.exit(main())
