using SpecVm.Faults;
using SpecVm.Smp;
using SpecVm.Mm;

namespace SpecVm.Workloads;

/// <summary>
/// will-it-scale's page_fault1/2/3 against the real kernel (Linux, through libc): the same loop as
/// <see cref="PageFaultWorkload"/>, cut into the same batches, so the two curves sit side by side.
/// </summary>
/// <remarks>
/// Tasks run on the harness machine's CPU threads, which are pinned to cores with <see cref="Affinity"/>; the
/// machine's model is otherwise unused. All tasks are threads of this process (one address space): the
/// <c>_processes</c> build would need fork, which a .NET process cannot do safely. page_fault2 and page_fault3 map the
/// task's own memfd (memfd_create + ftruncate: an unlinked tmpfs file, as will-it-scale's unlinked temporary file).
/// </remarks>
public sealed unsafe class NativePageFault : Workload
{
    private const int Page = Memory.PhysicalMemory.PageSize;

    private readonly int _number;
    private TaskSlot[] _slots = [];
    private int[] _fds = [];

    /// <summary>Creates native page_fault<paramref name="number"/>.</summary>
    /// <param name="number">1 (anonymous), 2 (private file) or 3 (shared file).</param>
    /// <param name="mappingBytes">Bytes per round (default 128 MiB).</param>
    public NativePageFault(int number, long mappingBytes = PageFaultWorkload.DefaultMappingBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(number, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(number, 3);
        if (mappingBytes <= 0 || mappingBytes % Page != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(mappingBytes), mappingBytes, "The mapping size must be a positive multiple of 4096 bytes.");
        }

        _number = number;
        MappingBytes = mappingBytes;
    }

    /// <summary>Bytes mapped per round.</summary>
    public long MappingBytes { get; }

    /// <inheritdoc/>
    public override string Name => $"native-page-fault{_number}";

    /// <inheritdoc/>
    public override bool IsNative => true;

    /// <inheritdoc/>
    public override string OperationUnit => "pages touched";

    /// <inheritdoc/>
    public override long MemoryBytes(int threads) => 1L << 20;

    /// <summary>As the model's page_fault tests (<see cref="PageFaultWorkload"/>): page_fault2 copies, the others zero.</summary>
    internal override FloorSpec? Floor => _number == 2
        ? new FloorSpec(FloorKind.Copy, 2 * MappingBytes)
        : new FloorSpec(FloorKind.Zero, MappingBytes);

    /// <inheritdoc/>
    public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("Native workloads run on Linux only.");
        }

        _slots = new TaskSlot[threads];
        _fds = new int[threads];
        for (int i = 0; i < threads; i++)
        {
            _fds[i] = _number == 1 ? -1 : LibC.CreateMemFile($"specvm-pf{_number}-{i}", MappingBytes);
        }
    }

    /// <inheritdoc/>
    public override long RunOperationBatch(Cpu cpu, int task)
    {
        ref TaskSlot s = ref _slots[task];
        nuint length = (nuint)MappingBytes;
        if (s.Handle == 0)
        {
            int flags = _number switch
            {
                1 => LibC.MapPrivate | LibC.MapAnonymous,
                2 => LibC.MapPrivate,
                _ => LibC.MapShared,
            };
            s.Handle = (nint)LibC.MapOrThrow(length, flags, _fds[task]);
            s.Offset = 0;
        }

        byte* p = (byte*)s.Handle;
        ulong end = Math.Min((ulong)length, s.Offset + ((ulong)PageFaultWorkload.BatchPages * Page));
        long touched = 0;
        for (ulong off = s.Offset; off < end; off += Page)
        {
            p[off] = 1;
            touched++;
        }

        s.Offset = end;
        if (end == length)
        {
            LibC.UnmapOrThrow(p, length);
            s.Handle = 0;
        }

        return touched;
    }

    /// <inheritdoc/>
    public override void Teardown()
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            if (_slots[i].Handle != 0)
            {
                LibC.UnmapOrThrow((byte*)_slots[i].Handle, (nuint)MappingBytes);
            }

            if (_fds[i] >= 0)
            {
                _ = LibC.Close(_fds[i]);
            }
        }

        _slots = [];
        _fds = [];
    }
}
