"""metallo.segment"""
