"""detectflow.server"""
