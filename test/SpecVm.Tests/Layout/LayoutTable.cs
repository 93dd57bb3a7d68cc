using System.Runtime.CompilerServices;
using System.Text;
using SpecVm.Sync;

namespace SpecVm.Tests.Layout;

/// <summary>
/// Measured field offsets of one type, printed like ObjectLayoutInspector's <c>TypeLayout.PrintLayout</c> (which our
/// package source does not offer) so a failing layout assertion shows the whole picture, not one number.
/// </summary>
/// <remarks>
/// Offsets are measured with <see cref="Unsafe.ByteOffset{T}(ref readonly T, ref readonly T)"/> between real
/// references, never computed from attributes. For a class, offset 0 is the first field, as in ObjectLayoutInspector;
/// the object header and method-table pointer are the <see cref="ObjectHeaderSize"/> bytes before it. A heap object is
/// only 8-byte aligned, so for it "on its own line" is checked for every possible base address
/// (<see cref="NeverShareALine"/>); for native memory whose real base address is given, the real lines are compared.
/// </remarks>
internal sealed class LayoutTable(string typeName, nuint? baseAddress = null)
{
    /// <summary>The object header plus the method-table pointer that precede a class's first field.</summary>
    public static readonly int ObjectHeaderSize = 2 * IntPtr.Size;

    private readonly List<Row> _rows = [];

    /// <summary>The type the table describes.</summary>
    public string TypeName => typeName;

    /// <summary>Adds a row; nested fields are named with a dot (<c>_hot.Count</c>).</summary>
    public LayoutTable Add(string name, long offset, long size)
    {
        _rows.Add(new Row(name, offset, size));
        return this;
    }

    /// <summary>Adds the object header and method-table pointer rows of a class (before offset 0).</summary>
    public LayoutTable AddObjectHeader() =>
        Add("(object header)", -ObjectHeaderSize, IntPtr.Size).Add("(method table pointer)", -IntPtr.Size, IntPtr.Size);

    /// <summary>The row named <paramref name="name"/>.</summary>
    public Row this[string name] => _rows.SingleOrDefault(r => r.Name == name) ?? throw new KeyNotFoundException($"No row '{name}' in\n{this}");

    /// <summary>
    /// True when the byte ranges can never lie in one <see cref="CacheLine.Size"/>-byte line, wherever the base
    /// address falls: the last byte of the earlier range is at least one whole line before the first byte of the later.
    /// </summary>
    public static bool NeverShareALine(long offsetA, long sizeA, long offsetB, long sizeB)
    {
        (long firstOffset, long firstSize, long secondOffset) = offsetA <= offsetB ? (offsetA, sizeA, offsetB) : (offsetB, sizeB, offsetA);
        long lastByteOfFirst = firstOffset + firstSize - 1;
        return lastByteOfFirst + CacheLine.Size <= secondOffset;
    }

    /// <summary>Asserts that rows <paramref name="a"/> and <paramref name="b"/> can never share a line.</summary>
    /// <remarks>With a known base address the rows' real lines are compared; without one, every base is assumed.</remarks>
    public void AssertNeverShareALine(string a, string b)
    {
        Row ra = this[a];
        Row rb = this[b];
        bool apart = baseAddress is { } at
            ? LastLine(at, ra) < FirstLine(at, rb) || LastLine(at, rb) < FirstLine(at, ra)
            : NeverShareALine(ra.Offset, ra.Size, rb.Offset, rb.Size);
        Assert.True(apart, $"'{a}' and '{b}' {(baseAddress == null ? "can share" : "share")} a {CacheLine.Size}-byte line.\n{this}");
    }

    /// <summary>Asserts a row's offset, printing the table on failure.</summary>
    public void AssertOffset(string name, long expected)
    {
        long actual = this[name].Offset;
        Assert.True(actual == expected, $"'{name}' is at offset {actual}, expected {expected}.\n{this}");
    }

    /// <summary>Asserts a condition about the layout, printing the table on failure.</summary>
    public void AssertTrue(bool condition, string what) => Assert.True(condition, $"{what}\n{this}");

    public override string ToString()
    {
        var rows = _rows.OrderBy(r => r.Offset).ThenBy(r => r.Name.Count(c => c == '.')).ToList();
        var lines = rows.Select(r =>
        {
            string range = r.Size == 1 ? $"{r.Offset}" : $"{r.Offset}..{r.Offset + r.Size - 1}";
            string indent = new(' ', 2 * r.Name.Count(c => c == '.'));
            string lines = baseAddress is { } at ? $"line {FirstLine(at, r)}{(LastLine(at, r) != FirstLine(at, r) ? $"..{LastLine(at, r)}" : "")}  " : "";
            return $"{range,12}: {lines}{indent}{r.Name} ({r.Size} bytes)";
        }).ToList();
        int width = Math.Max(lines.Max(l => l.Length), 40) + 2;
        var sb = new StringBuilder();
        sb.AppendLine($"Type layout for '{TypeName}' (offsets in bytes; a line is {CacheLine.Size} bytes" +
            (baseAddress is { } at ? $"; offset 0 is at 0x{at:X}, lines counted from there)" : ")"));
        sb.AppendLine("|" + new string('=', width) + "|");
        foreach (string line in lines)
        {
            sb.AppendLine("| " + line.PadRight(width - 1) + "|");
        }

        sb.Append("|" + new string('=', width) + "|");
        return sb.ToString();
    }

    // Line numbers relative to the line holding the base address.
    private static long FirstLine(nuint at, Row r) => (long)((at + (nuint)r.Offset) / CacheLine.Size) - (long)(at / CacheLine.Size);

    private static long LastLine(nuint at, Row r) => (long)((at + (nuint)(r.Offset + r.Size - 1)) / CacheLine.Size) - (long)(at / CacheLine.Size);

    /// <summary>One field (or pseudo-field) of the table.</summary>
    public sealed record Row(string Name, long Offset, long Size);
}

/// <summary>Measures where a field of a heap object lies, relative to the object's first field.</summary>
internal static class ObjectOffsets
{
    /// <summary>The offset of <paramref name="field"/> inside <paramref name="obj"/>, from the first field.</summary>
    public static long Of<TField>(object obj, ref TField field) =>
        (long)Unsafe.ByteOffset(ref Unsafe.As<RawObject>(obj).FirstField, ref Unsafe.As<TField, byte>(ref field));

    // Reinterpreting any object as this class gives a reference to its first field (the runtime's RawData trick).
    private sealed class RawObject
    {
#pragma warning disable CS0649 // Never written: only its address is used.
        public byte FirstField;
#pragma warning restore CS0649
    }
}
