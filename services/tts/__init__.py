"""Speech synthesis service: piper-tts voices over a server-streaming gRPC
call, synthesised clause by clause so the first audio leaves early, and
cancellable between clauses."""
