"""`python -m glmtrt` == the `glmtrt` command."""
from glmtrt.cli import main

if __name__ == "__main__":
    main()
