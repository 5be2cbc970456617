"""RAG service: retrieval over a local documents folder with MiniLM embeddings."""
