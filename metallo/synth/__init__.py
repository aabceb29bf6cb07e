"""metallo.synth"""
