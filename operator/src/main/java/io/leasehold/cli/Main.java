package io.leasehold.cli;

import java.util.List;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;

/** {@code java -jar leasehold.jar}: the operator's command line. */
@Command(
    name = "leasehold",
    mixinStandardHelpOptions = true,
    versionProvider = VersionProvider.class,
    description = "Serializes Terraform runs on shared state inside Kubernetes.",
    subcommands = {RunCommand.class, DemoCommand.class, RemoveFinalizersCommand.class})
public final class Main implements Runnable {

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  public static void main(String[] args) {
    System.exit(commandLine().execute(args));
  }

  public static CommandLine commandLine() {
    CommandLine cli =
        new CommandLine(new Main())
            .setCaseInsensitiveEnumValuesAllowed(true)
            .setExecutionExceptionHandler(
                (e, commandLine, parsed) -> {
                  // Users get the reason, not a stack trace; the log has the details.
                  commandLine.getErr().println("error: " + e.getMessage());
                  commandLine.getErr().flush();
                  return 1;
                });
    if (LocalBuild.find().isEmpty()) {
      serverJarHelp(cli);
    }
    return cli;
  }

  /** Options of {@code run} that only the local jar's embedded API serves. */
  private static final List<String> EMBEDDED_OPTIONS =
      List.of("--embedded", "--api-port", "--filename", "--kubeconfig-out", "--replicas");

  /**
   * The server jar's help shows what it can do: the demo and the embedded API's options are hidden
   * (they still parse, and refuse with the way to the local jar), and the help says where they are.
   */
  private static void serverJarHelp(CommandLine cli) {
    String elsewhere =
        "This is the server jar: 'run --embedded' and 'demo' need the local jar ("
            + LocalBuild.HOW_TO_GET
            + ").";
    cli.getCommandSpec().usageMessage().footer(elsewhere);
    cli.getSubcommands().get("demo").getCommandSpec().usageMessage().hidden(true);
    CommandSpec run = cli.getSubcommands().get("run").getCommandSpec();
    for (String name : EMBEDDED_OPTIONS) {
      OptionSpec option = run.findOption(name);
      run.remove(option);
      run.addOption(OptionSpec.builder(option).hidden(true).build());
    }
    run.usageMessage()
        .description(
            "Runs the operator against the current kubeconfig or in-cluster configuration.",
            elsewhere);
  }

  @Override
  public void run() {
    throw new CommandLine.ParameterException(spec.commandLine(), "Missing a command: try 'run'");
  }
}
