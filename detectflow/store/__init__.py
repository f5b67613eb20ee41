"""detectflow.store"""
