"""Front ends: turn what users give (text, scores, phones, videos) into model inputs."""
