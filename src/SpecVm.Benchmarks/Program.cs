using System.CommandLine;
using System.ComponentModel;
using SpecVm.Benchmarks.Cli;

namespace SpecVm.Benchmarks;

/// <summary>
/// The SpecVm command line: with no arguments, the default scaling comparison (the README's main job); <c>scale</c>
/// with options; <c>compare A B</c>; <c>bdn ...</c> (BenchmarkDotNet's switcher, arguments passed through untouched).
/// </summary>
internal static class Program
{
    /// <summary>
    /// BenchmarkDotNet options a BenchmarkDotNet user types straight after <c>--</c> (its own convention,
    /// <c>dotnet run -c Release -- --filter '*X*'</c>): as a first argument they mean <c>bdn</c>.
    /// </summary>
    internal static readonly string[] BdnOptions = ["--filter", "-f", "--list", "--job", "-j", "--runtimes", "--inProcess", "-i", "--allCategories", "--anyCategories", "--info"];

    public static int Main(string[] args)
    {
        // bdn first: everything after it belongs to BenchmarkDotNet (--filter and friends), not to System.CommandLine.
        if (args.Length > 0 && args[0] == "bdn")
        {
            return BdnCommand.Run(args[1..]);
        }

        // Only as the first argument: none of these is a scale option, so nothing of scale's is taken away.
        if (args.Length > 0 && BdnOptions.Contains(args[0]))
        {
            Console.Error.WriteLine($"note: {args[0]} is a BenchmarkDotNet option; running it as: bdn {string.Join(' ', args)}");
            return BdnCommand.Run(args);
        }

        try
        {
            RootCommand root = Commands.Build();
            ParseResult parsed = root.Parse(args);
            if (parsed.Errors.Count > 0 && !args.Contains("--help") && !args.Contains("-h"))
            {
                // One line: the first error names the option or argument; the rest usually follow from it.
                Console.Error.WriteLine($"error: {parsed.Errors[0].Message} (run with --help for usage)");
                return ExitCodes.BadInput;
            }

            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.BadInput;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or Win32Exception or InvalidOperationException or ArgumentException or PlatformNotSupportedException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.Failed;
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("SPECVM_TRACE") != "1")
        {
            // Anything else is a bug; one line here, the stack trace with SPECVM_TRACE=1.
            Console.Error.WriteLine($"error: unexpected {e.GetType().Name}: {e.Message} (set SPECVM_TRACE=1 for the stack trace)");
            return ExitCodes.Failed;
        }
    }
}
