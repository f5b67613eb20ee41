"""detectflow.adapters"""
