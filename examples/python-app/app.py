"""The example application: prints a greeting built by the package in src/."""

from src.greeting import greeting

if __name__ == "__main__":
    print(greeting("Lamina"))
