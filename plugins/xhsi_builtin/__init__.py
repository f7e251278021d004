"""xhsi's built-in plugins. Each module is one plugin, declared in the ``xhsi`` entry-point
group of xhsi's pyproject.toml exactly as a third-party plugin would declare itself."""
