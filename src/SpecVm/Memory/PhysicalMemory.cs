using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SpecVm.Memory;

/// <summary>
/// The machine's physical memory: one native, page-aligned arena of 4 KiB frames and a <see cref="PageFrame"/> metadata
/// array beside it (Linux <c>mem_map</c>). Frame data is real memory that workloads read and write.
/// </summary>
public sealed unsafe class PhysicalMemory
{
    /// <summary>Bytes in one frame (4 KiB).</summary>
    public const int PageSize = 4096;

    /// <summary>log2 of <see cref="PageSize"/>.</summary>
    public const int PageShift = 12;

    private byte* _arena;
    private PageFrame* _frames;
    private readonly int _frameCount;

    /// <summary>Reserves <paramref name="frameCount"/> frames. The OS commits the memory lazily, on first touch.</summary>
    /// <param name="frameCount">The number of 4 KiB frames; at least 16.</param>
    internal PhysicalMemory(int frameCount)
    {
        if (frameCount < 16)
        {
            throw new ArgumentOutOfRangeException(nameof(frameCount), frameCount, "Physical memory needs at least 16 frames.");
        }

        _frameCount = frameCount;
        _arena = (byte*)NativeMemory.AlignedAlloc((nuint)frameCount * PageSize, PageSize);
        _frames = (PageFrame*)NativeMemory.AlignedAlloc((nuint)frameCount * (nuint)sizeof(PageFrame), 128);
        NativeMemory.Clear(_frames, (nuint)frameCount * (nuint)sizeof(PageFrame));

        // Frame 0 is never allocated (FrameAllocator keeps it as a guard); zeroed, it doubles as the empty table that
        // a disposed page table points at.
        NativeMemory.Clear(_arena, PageSize);
    }

    /// <summary>The number of frames.</summary>
    public int FrameCount => _frameCount;

    /// <summary>The total size in bytes.</summary>
    public long Bytes => (long)_frameCount * PageSize;

    /// <summary>The metadata of frame <paramref name="pfn"/>.</summary>
    /// <param name="pfn">The page frame number, 0 to <see cref="FrameCount"/> - 1.</param>
    internal ref PageFrame Frame(long pfn)
    {
        ObjectDisposedException.ThrowIf(_frames == null, this);
        if ((ulong)pfn >= (ulong)_frameCount)
        {
            ThrowBadPfn(pfn);
        }

        return ref FrameUnchecked(pfn);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref PageFrame FrameUnchecked(long pfn) => ref _frames[pfn];

    /// <summary>True if <paramref name="p"/> points into the frames' data (a PTE, for the simulator's line labels).</summary>
    internal bool InArena(byte* p) => p >= _arena && p < _arena + ((long)FrameCount << PageShift);

    /// <summary>True if <paramref name="p"/> points into the frame metadata (a PTL, for the simulator's line labels).</summary>
    internal bool InFrameTable(byte* p) => p >= (byte*)_frames && p < (byte*)(_frames + FrameCount);

    /// <summary>The address of frame <paramref name="pfn"/>'s data.</summary>
    /// <param name="pfn">The page frame number.</param>
    internal byte* FrameData(long pfn)
    {
        ObjectDisposedException.ThrowIf(_arena == null, this);
        if ((ulong)pfn >= (ulong)_frameCount)
        {
            ThrowBadPfn(pfn);
        }

        return FrameDataUnchecked(pfn);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal byte* FrameDataUnchecked(long pfn) => _arena + (pfn << PageShift);

    /// <summary>A span over frame <paramref name="pfn"/>'s 4 KiB of data.</summary>
    /// <param name="pfn">The page frame number.</param>
    internal Span<byte> FrameSpan(long pfn) => new(FrameData(pfn), PageSize);

    /// <summary>
    /// Makes the OS commit the whole arena now by writing a zero into every frame, so that first touches of the host's
    /// memory (real page faults, possibly milliseconds each on a loaded host) are not measured as the model's cost.
    /// Call it before any frame is handed out: it overwrites the first byte of every frame.
    /// </summary>
    internal void Prefault()
    {
        ObjectDisposedException.ThrowIf(_arena == null, this);
        for (long pfn = 0; pfn < _frameCount; pfn++)
        {
            _arena[pfn << PageShift] = 0;
        }
    }

    /// <summary>Counts frames by state by scanning the metadata (for checkers and reports; not for hot paths).</summary>
    public FrameCensus Census()
    {
        ObjectDisposedException.ThrowIf(_frames == null, this);
        var census = new FrameCensus();
        for (long pfn = 0; pfn < _frameCount; pfn++)
        {
            census.Add((int)_frames[pfn].ReadState());
        }

        return census;
    }

    /// <summary>Frees the arena and the metadata (the machine does, when it is disposed).</summary>
    internal void Dispose()
    {
        if (_arena != null)
        {
            NativeMemory.AlignedFree(_arena);
            NativeMemory.AlignedFree(_frames);
            _arena = null;
            _frames = null;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBadPfn(long pfn) =>
        throw new ArgumentOutOfRangeException(nameof(pfn), pfn, $"PFN must be in 0..{_frameCount - 1} (the arena has {_frameCount} frames).");
}

/// <summary>Frames counted by state.</summary>
public sealed class FrameCensus
{
    private readonly long[] _byState = new long[7];

    /// <summary>Free frames.</summary>
    public long Free => _byState[(int)FrameState.Free];

    /// <summary>Anonymous (mapped private) frames.</summary>
    public long Anonymous => _byState[(int)FrameState.Anonymous];

    /// <summary>Page-table frames.</summary>
    public long PageTables => _byState[(int)FrameState.PageTable];

    /// <summary>Page-cache frames.</summary>
    public long PageCache => _byState[(int)FrameState.PageCache];

    /// <summary>Frames waiting for a TLB flush.</summary>
    public long AwaitingFlush => _byState[(int)FrameState.AwaitingFlush];

    /// <summary>Frames being prepared by a fault in progress.</summary>
    public long Preparing => _byState[(int)FrameState.Preparing];

    /// <summary>The shared zero page (1 on a machine: it is allocated with the machine and never freed).</summary>
    public long ZeroPage => _byState[(int)FrameState.ZeroPage];

    /// <summary>All frames counted.</summary>
    public long Total => _byState.Sum();

    internal void Add(int state) => _byState[state]++;

    /// <inheritdoc/>
    public override string ToString() =>
        $"free {Free}, anonymous {Anonymous}, page tables {PageTables}, page cache {PageCache}, awaiting flush {AwaitingFlush}, preparing {Preparing}, zero page {ZeroPage}, total {Total}";
}
