"""Generation recipes (YAML), shipped inside the wheel as genaug.pipelines."""
