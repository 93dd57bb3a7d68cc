namespace SpecVm.Benchmarks.Cli;

/// <summary>Process exit codes.</summary>
internal static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;

    /// <summary>The run or the comparison failed (I/O, a workload error).</summary>
    public const int Failed = 1;

    /// <summary>Bad command-line input.</summary>
    public const int BadInput = 2;
}

/// <summary>Bad command-line input, reported as one line on stderr.</summary>
/// <param name="message">What was wrong.</param>
internal sealed class UsageException(string message) : Exception(message);
