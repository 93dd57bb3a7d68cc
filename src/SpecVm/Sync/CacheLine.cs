namespace SpecVm.Sync;

/// <summary>The one cache-line constant that every padded structure in SpecVm is built from.</summary>
/// <remarks>
/// 128 bytes, not 64: x86-64 cores fetch lines in adjacent pairs (the spatial prefetcher), so two hot words 64 bytes
/// apart still false-share; ARM64 parts such as Apple's M series have 128-byte lines outright. An AnyCPU package
/// cannot rely on <c>#if TARGET_ARM64</c>, so one number serves both (dotnet/runtime Internal/Padding.cs does the same).
/// </remarks>
internal static class CacheLine
{
    /// <summary>The size in bytes of one padded line.</summary>
    public const int Size = 128;
}
