using System.Runtime.CompilerServices;

// No zero-initialisation of locals (C#'s definite assignment still guarantees every local is written before it is
// read): the access path's address-exposed locals (the stack marker, the slow path's out slot) are otherwise zeroed
// on every simulated access. The library's two stackallocs clear their buffers explicitly.
[module: SkipLocalsInit]
