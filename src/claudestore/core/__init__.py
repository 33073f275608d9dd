"""The canonical model of a conversation, a response and its stream.

Everything else in the package speaks to everything else through these types. This
package imports nothing else of ClaudeStore's. Wire formats (``protocol``) and
upstreams (``providers``) translate to and from it at the edges.
"""
