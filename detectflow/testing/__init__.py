"""detectflow.testing"""
