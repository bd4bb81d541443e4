"""Small helpers shared by several ganlab packages (pixel conventions, files, OmegaConf resolvers)."""
