using System.Globalization;

namespace SpecVm.Smp;

// The CPU topology the scheduler sees: which cores are SMT siblings (hardware threads of one physical core).
public static partial class Affinity
{
    /// <summary>Where Linux lists a core's SMT siblings (<c>cpuN/topology/thread_siblings_list</c>).</summary>
    private const string SysCpu = "/sys/devices/system/cpu";

    /// <summary>
    /// The hardware threads that share <paramref name="core"/>'s physical core, itself included, in ascending order
    /// (Linux <c>/sys/devices/system/cpu/cpuN/topology/thread_siblings_list</c>); null where the OS does not say.
    /// Without SMT the list is just <paramref name="core"/>.
    /// </summary>
    /// <param name="core">An OS core id.</param>
    public static IReadOnlyList<int>? ThreadSiblings(int core)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(core);
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        try
        {
            string path = Path.Combine(SysCpu, $"cpu{core.ToString(CultureInfo.InvariantCulture)}", "topology", "thread_siblings_list");
            return File.Exists(path) ? ParseCpuList(File.ReadAllText(path)) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// Parses a Linux CPU list ("0", "0,4", "0-3,8-11"; the kernel's <c>cpulist</c> format) into ascending core ids;
    /// null when the text is not one.
    /// </summary>
    /// <param name="text">The list, as sysfs prints it (a trailing newline is fine).</param>
    internal static int[]? ParseCpuList(string text)
    {
        var cores = new SortedSet<int>();
        foreach (string part in text.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int dash = part.IndexOf('-', StringComparison.Ordinal);
            string lo = dash < 0 ? part : part[..dash], hi = dash < 0 ? part : part[(dash + 1)..];
            if (!int.TryParse(lo, NumberStyles.None, CultureInfo.InvariantCulture, out int first)
                || !int.TryParse(hi, NumberStyles.None, CultureInfo.InvariantCulture, out int last)
                || last < first || last - first > MaskWords * 64)
            {
                return null;
            }

            for (int c = first; c <= last; c++)
            {
                cores.Add(c);
            }
        }

        return cores.Count == 0 ? null : [.. cores];
    }
}
