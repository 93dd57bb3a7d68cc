using System.Runtime.CompilerServices;
using System.Text;
using SpecVm.Mm;
using SpecVm.Sync;
using Xunit.Abstractions;

namespace SpecVm.Tests.Mm;

/// <summary>
/// Pins the size of a <see cref="Vma"/>: at most three 128-byte cache lines plus two for the isolated reader count, header included. Offsets are measured
/// with <see cref="Unsafe.ByteOffset{T}(ref readonly T, ref readonly T)"/> between a ref to the object's first data
/// byte and refs to its private fields (through <see cref="UnsafeAccessorAttribute"/>), and cross-checked against
/// the bytes one allocation takes.
/// </summary>
public sealed class VmaLayoutTests(ITestOutputHelper output)
{
    /// <summary>Object header (sync block index) and method-table pointer in front of the fields on 64-bit.</summary>
    private static readonly int HeaderBytes = 2 * IntPtr.Size;

    [Fact]
    public void AVmaFitsInThreeCacheLinesPlusItsReaderCountsOwnLine()
    {
        using var srcu = new Srcu(1);
        var slab = new VmaSlab(srcu, poison: false);
        Vma vma = NewVma(slab); // Warm-up: the first call may allocate for JIT or type loading.
        long before = GC.GetAllocatedBytesForCurrentThread();
        vma = NewVma(slab);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        ref byte data = ref Unsafe.As<RawData>(vma).Data;
        var fields = new List<(string Name, string Type, long Offset, int Size)>
        {
            Field("_start", "ulong", ref data, ref Start(vma)),
            Field("_end", "ulong", ref data, ref End(vma)),
            Field("_protection", "Protection", ref data, ref Prot(vma)),
            Field("_kind", "MappingKind", ref data, ref Kind(vma)),
            Field("_file", "SimFile?", ref data, ref File(vma)),
            Field("_filePageOffset", "long", ref data, ref FilePageOffset(vma)),
            Field("_mm", "AddressSpace?", ref data, ref Mm(vma)),
            Field("_slab", "VmaSlab", ref data, ref Slab(vma)),
            Field("_seq", "SeqCount", ref data, ref Seq(vma)),
            Field("_lockSeq", "int", ref data, ref LockSeq(vma)),
            Field("_readers.Value", "int", ref data, ref vma.ReaderCount),
            Field("_detached", "int", ref data, ref Detached(vma)),
            Field("_anonVma", "int", ref data, ref AnonVma(vma)),
            Field("_poisoned", "int", ref data, ref Poisoned(vma)),
        };
        fields.Sort((a, b) => a.Offset.CompareTo(b.Offset));
        long fieldBytes = fields.Max(f => f.Offset + f.Size);
        long measured = HeaderBytes + ((fieldBytes + IntPtr.Size - 1) / IntPtr.Size * IntPtr.Size);
        string table = Table(fields, measured, allocated);
        output.WriteLine(table);

        Assert.True(fields.All(f => f.Offset >= 0), table);
        Assert.True(measured <= allocated, $"The fields reach past the allocation.\n{table}");
        Assert.True(allocated <= 5 * CacheLine.Size, $"A Vma takes {allocated} bytes, more than three {CacheLine.Size}-byte cache lines plus the reader count's two.\n{table}");

        // The reader count's cache line holds nothing else, wherever the object lands (objects are 8-byte aligned):
        // every other field ends a line's worth before it or starts a line after it.
        long r = fields.Single(f => f.Name == "_readers.Value").Offset;
        foreach ((string name, _, long offset, int size) in fields.Where(f => f.Name != "_readers.Value"))
        {
            Assert.True(offset + size <= r - (CacheLine.Size - sizeof(int)) || offset >= r + CacheLine.Size, $"{name} may share the reader count's cache line.\n{table}");
        }
    }

    private static Vma NewVma(VmaSlab slab) => new(slab);

    private static (string, string, long, int) Field<T>(string name, string type, ref byte data, ref T field) =>
        (name, type, (long)Unsafe.ByteOffset(ref data, ref Unsafe.As<T, byte>(ref field)), RuntimeHelpers.IsReferenceOrContainsReferences<T>() ? IntPtr.Size : Unsafe.SizeOf<T>());

    /// <summary>An ObjectLayoutInspector-style picture of the instance.</summary>
    private static string Table(List<(string Name, string Type, long Offset, int Size)> fields, long measured, long allocated)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"Type layout for 'Vma' (measured {measured} bytes, one allocation {allocated} bytes, budget {5 * CacheLine.Size})");
        sb.AppendLine($"| {"bytes",-9} | {"field",-40} |");
        sb.AppendLine($"|-{new string('-', 9)}-|-{new string('-', 40)}-|");
        sb.AppendLine($"| {$"0-{HeaderBytes - 1}",-9} | {"object header + method table pointer",-40} |");
        long next = 0;
        foreach ((string name, string type, long offset, int size) in fields)
        {
            if (offset > next)
            {
                sb.AppendLine($"| {$"{HeaderBytes + next}-{HeaderBytes + offset - 1}",-9} | {$"padding ({offset - next} bytes)",-40} |");
            }

            sb.AppendLine($"| {$"{HeaderBytes + offset}-{HeaderBytes + offset + size - 1}",-9} | {$"{type} {name} ({size} bytes)",-40} |");
            next = Math.Max(next, offset + size);
        }

        return sb.ToString();
    }

    private sealed class RawData
    {
        public byte Data;
    }

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_start")]
    private static extern ref ulong Start(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_end")]
    private static extern ref ulong End(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_protection")]
    private static extern ref Protection Prot(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_kind")]
    private static extern ref MappingKind Kind(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_file")]
    private static extern ref SimFile? File(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_filePageOffset")]
    private static extern ref long FilePageOffset(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_mm")]
    private static extern ref AddressSpace? Mm(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_slab")]
    private static extern ref VmaSlab Slab(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_seq")]
    private static extern ref SeqCount Seq(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_lockSeq")]
    private static extern ref int LockSeq(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_anonVma")]
    private static extern ref int AnonVma(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_detached")]
    private static extern ref int Detached(Vma vma);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_poisoned")]
    private static extern ref int Poisoned(Vma vma);
}
