using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Workloads;

/// <summary>
/// An ebizzy-like workload (the benchmark Dufour's series reported +70% to +430% on): each task maps a chunk, fills
/// it with sorted records, binary-searches it for random keys and unmaps it. One operation is one search.
/// </summary>
/// <remarks>
/// Records are 8-byte keys every <see cref="RecordStride"/> bytes, written and read through the MMU, so a round takes
/// one fault per page, TLB hits for the rest, and two mmap-lock write sections (map, unmap) with a shootdown.
/// All tasks share one address space (ebizzy is threaded).
/// </remarks>
public sealed class Ebizzy : Workload
{
    /// <summary>Default chunk: 1 MiB.</summary>
    public const long DefaultChunkBytes = 1L << 20;

    /// <summary>Default searches per chunk.</summary>
    public const int DefaultSearchesPerChunk = 64;

    /// <summary>Bytes between records.</summary>
    public const int RecordStride = 256;

    private AddressSpace? _mm;
    private TaskSlot[] _slots = [];

    /// <summary>Creates the workload.</summary>
    /// <param name="chunkBytes">Bytes per chunk: a positive multiple of 4 KiB.</param>
    /// <param name="searchesPerChunk">Searches made in each chunk before it is freed.</param>
    public Ebizzy(long chunkBytes = DefaultChunkBytes, int searchesPerChunk = DefaultSearchesPerChunk)
    {
        if (chunkBytes <= 0 || chunkBytes % Memory.PhysicalMemory.PageSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(chunkBytes), chunkBytes, "The chunk size must be a positive multiple of 4096 bytes.");
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(searchesPerChunk);
        ChunkBytes = chunkBytes;
        SearchesPerChunk = searchesPerChunk;
    }

    /// <summary>Bytes per chunk.</summary>
    public long ChunkBytes { get; }

    /// <summary>Searches per chunk.</summary>
    public int SearchesPerChunk { get; }

    /// <inheritdoc/>
    public override string Name => "ebizzy";

    /// <inheritdoc/>
    public override string OperationUnit => "searches";

    /// <inheritdoc/>
    public override long MemoryBytes(int threads) => (threads * ChunkBytes * 2) + (64L << 20);

    /// <inheritdoc/>
    public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
    {
        ArgumentNullException.ThrowIfNull(machine);
        ArgumentNullException.ThrowIfNull(strategy);
        _mm = new AddressSpace(machine, strategy, AddressSpaceOptions);
        _slots = new TaskSlot[threads];
        for (int i = 0; i < threads; i++)
        {
            _slots[i].Random = (ulong)(i + 1) * 0xD1B54A32D192ED03UL;
        }
    }

    /// <inheritdoc/>
    public override long RunOperationBatch(Cpu cpu, int task)
    {
        AddressSpace mm = _mm!;
        ref TaskSlot s = ref _slots[task];
        ulong length = (ulong)ChunkBytes;
        long records = ChunkBytes / RecordStride;
        ulong a = mm.Map(cpu, length, Protection.ReadWrite);
        for (long r = 0; r < records; r++)
        {
            mm.Write(cpu, a + (ulong)(r * RecordStride), (ulong)(r * 2)); // Sorted, even keys.
        }

        long found = 0;
        for (int q = 0; q < SearchesPerChunk; q++)
        {
            ulong key = (s.NextRandom() % (ulong)records) * 2;
            long lo = 0, hi = records - 1;
            while (lo <= hi)
            {
                long mid = (lo + hi) >>> 1;
                ulong v = mm.Read<ulong>(cpu, a + (ulong)(mid * RecordStride));
                if (v == key)
                {
                    found++;
                    break;
                }

                if (v < key)
                {
                    lo = mid + 1;
                }
                else
                {
                    hi = mid - 1;
                }
            }
        }

        mm.Unmap(cpu, a, length);
        s.Count += found;
        return SearchesPerChunk;
    }

    /// <inheritdoc/>
    public override IEnumerable<AddressSpace> AddressSpaces => _mm == null ? [] : [_mm];

    /// <inheritdoc/>
    public override void Teardown()
    {
        _mm?.Dispose();
        _mm = null;
        _slots = [];
    }
}
