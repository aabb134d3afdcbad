"""`genaug fit-generator`: train an in-domain unconditional diffusion model on a shard set, for img2img."""
