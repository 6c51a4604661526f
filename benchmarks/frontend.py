"""Front-end latency benchmark, the same command as `kame bench frontend`.

Example: `python benchmarks/frontend.py --model random:7b --device cuda`.
"""

from kame_cli.bench.frontend import main

if __name__ == "__main__":
    main()
