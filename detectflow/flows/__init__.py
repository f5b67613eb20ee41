"""detectflow.flows"""
