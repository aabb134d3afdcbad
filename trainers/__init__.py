"""Training recipes (YAML), shipped inside the wheel as genaug.trainers."""
