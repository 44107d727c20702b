# frozen_string_literal: true

# Nimbus's Ruby runtime.
#
# Implements Lambda's Ruby handler contract on top of the Runtime API
# (2018-06-01), behaving as AWS's Ruby runtime interface client does:
#
# * `_HANDLER` is `FILE.METHOD` or `FILE.CLASS.METHOD` (CLASS may be a
#   `Module::Class` path; METHOD is then a class-level method). FILE is
#   required from $LOAD_PATH, which starts with LAMBDA_TASK_ROOT (/var/task)
#   and /opt/ruby/lib (RUBYLIB on Lambda); gems are found on
#   /var/task/vendor/bundle/ruby/<ver> and /opt/ruby/gems/<ver> (GEM_PATH on
#   Lambda), ahead of the interpreter's own gem directories.
# * The handler is called as `handler(event:, context:)`. The event is the
#   parsed JSON (the raw body when the Runtime API says it is not JSON). The
#   result is sent as `result.to_json`; a StringIO/IO result is sent as its
#   bytes, with Content-Type application/unknown.
# * Errors are `{"errorMessage", "errorType", "stackTrace"}` with errorType
#   `Function<ErrorClass>` (handler), `Init<ErrorClass>` (loading the handler
#   file) and the Lambda-Runtime-Function-Error-Type header set to that type
#   for Ruby's core error classes and `Function<UserException>` otherwise.
#   stackTrace is the backtrace (at most 100 frames) down to the runtime's own
#   frames. NoMethodError, NameError and non-StandardError exceptions (e.g.
#   SystemExit) are "critical": reported, then the runtime exits (status 255),
#   so the next invocation starts a new environment, as on Lambda.
# * The context has the attributes of Lambda's Ruby context (function_name,
#   function_version, invoked_function_arn, memory_limit_in_mb,
#   aws_request_id, log_group_name, log_stream_name, deadline_ms, identity,
#   client_context, tenant_id, get_remaining_time_in_millis); identity and
#   client_context are the decoded JSON hashes.
# * `Logger.new($stdout)` (or $stderr) gets Lambda's log line format:
#   `I, [<time> #<pid>]  INFO <request id> -- : <message>`.
#
# Standard library only (net/http, json, logger).

require 'json'
require 'logger'
require 'net/http'
require 'rbconfig'
require 'stringio'

$stdout.sync = true
$stderr.sync = true

# The invocation in progress (Lambda's Ruby runtime keeps it in this global too).
$_global_aws_request_id = nil

module NimbusLambdaRuntime
  RUNTIME_FILE = File.expand_path(__FILE__)
  TASK_ROOT = ENV['LAMBDA_TASK_ROOT'] || '/var/task'
  USER_AGENT = "nimbus-lambda-ruby/#{RUBY_VERSION}"

  # Lambda's RUBYLIB (/var/task:/var/runtime/lib:/opt/ruby/lib) and GEM_PATH
  # (/var/task/vendor/bundle/ruby/<ver>:/opt/ruby/gems/<ver>:<runtime's gems>).
  def self.setup_paths
    ['/opt/ruby/lib', TASK_ROOT].each do |dir|
      $LOAD_PATH.unshift(dir) unless $LOAD_PATH.include?(dir)
    end
    ver = RbConfig::CONFIG['ruby_version']
    wanted = ["#{TASK_ROOT}/vendor/bundle/ruby/#{ver}", "/opt/ruby/gems/#{ver}"]
    rest = (ENV['GEM_PATH'] || '').split(File::PATH_SEPARATOR)
    rest += Gem.default_path if defined?(Gem) && Gem.respond_to?(:default_path)
    ENV['GEM_PATH'] = (wanted + rest).reject(&:empty?).uniq.join(File::PATH_SEPARATOR)
    Gem.clear_paths if defined?(Gem) && Gem.respond_to?(:clear_paths)
  end

  # Lambda's Ruby log line: `I, [2024-01-01T00:00:00.123456 #8]  INFO <request id> -- : message`.
  # (Lambda frames each record on its telemetry pipe; on stdout a newline ends it.)
  class LogFormatter < ::Logger::Formatter
    FORMAT = "%<sev>s, [%<datetime>s #%<process>d] %<severity>5s %<request_id>s -- %<progname>s: %<msg>s\n"

    def call(severity, time, progname, msg)
      (FORMAT % { sev: severity[0..0], datetime: format_datetime(time), process: $$, severity: severity,
                  request_id: $_global_aws_request_id, progname: progname, msg: msg2str(msg) }).encode('UTF-8')
    end
  end

  # A Logger writing to stdout/stderr (or to nothing in particular) uses Lambda's format.
  module LoggerPatch
    def initialize(logdev = nil, *args, **opts)
      if logdev.nil? || logdev.equal?($stdout) || logdev.equal?($stderr)
        logdev ||= $stdout
        opts[:formatter] ||= LogFormatter.new
      end
      super(logdev, *args, **opts)
    end
  end

  # Core Ruby errors keep their own name in the Lambda-Runtime-Function-Error-Type header.
  STANDARD_ERRORS = %w[ArgumentError NoMethodError Exception StandardError NameError LoadError
                       SystemExit SystemStackError].freeze

  # An error as Lambda's Ruby runtime reports it.
  class ReportedError
    attr_reader :error_type, :original

    def initialize(original, classification)
      @original = original
      @error_class = original.class.to_s
      @error_type = "#{classification}<#{original.class}>"
    end

    def header_type
      STANDARD_ERRORS.include?(@error_class) ? @error_type : 'Function<UserException>'
    end

    def to_lambda_response
      { errorMessage: message, errorType: @error_type, stackTrace: stack_trace }
    end

    private

    def message
      @original.message
    rescue StandardError
      @error_class
    end

    # The backtrace (at most 100 frames), cut at the first frame of this runtime.
    def stack_trace
      frames = []
      (@original.backtrace_locations || []).first(100).each do |loc|
        break if loc.absolute_path == RUNTIME_FILE || loc.path == RUNTIME_FILE

        frames << loc.to_s
      end
      frames
    end
  end

  # One keep-alive HTTP/1.1 connection to this environment's Runtime API.
  class RuntimeClient
    PREFIX = '/2018-06-01/runtime'

    class Unavailable < StandardError; end

    def initialize(address)
      host, _, port = address.rpartition(':')
      @host = host.delete_prefix('[').delete_suffix(']')
      @port = Integer(port)
      @http = nil
    end

    def next_invocation
      resp = request(Net::HTTP::Get.new(PREFIX + '/invocation/next', base_headers))
      raise Unavailable, "Received #{resp.code} when waiting for next invocation." unless resp.is_a?(Net::HTTPSuccess)

      resp
    end

    def respond(request_id, body, content_type)
      post("/invocation/#{request_id}/response", body, 'Content-Type' => content_type)
    end

    def error(path, err)
      post(path, JSON.generate(err.to_lambda_response),
           'Content-Type' => 'application/json', 'Lambda-Runtime-Function-Error-Type' => err.header_type)
    end

    private

    def base_headers
      { 'User-Agent' => USER_AGENT }
    end

    def post(path, body, headers)
      req = Net::HTTP::Post.new(PREFIX + path, base_headers.merge(headers))
      req.body = body.to_s
      request(req)
    end

    def request(req)
      attempts = 0
      begin
        connect if @http.nil?
        @http.request(req)
      rescue IOError, SystemCallError, Net::ReadTimeout, Net::WriteTimeout, EOFError, Net::HTTPBadResponse
        @http&.finish rescue nil # rubocop:disable Style/RescueModifier
        @http = nil
        attempts += 1
        retry if attempts < 2
        raise
      end
    end

    def connect
      http = Net::HTTP.new(@host, @port)
      http.read_timeout = 1_000_000 # /next is a long poll
      http.keep_alive_timeout = 1_000_000
      http.start
      @http = http
    end
  end

  # The `context` argument, with the attributes of Lambda's Ruby context.
  class LambdaContext
    attr_reader :aws_request_id, :invoked_function_arn, :log_group_name, :log_stream_name,
                :function_name, :memory_limit_in_mb, :function_version, :identity, :tenant_id,
                :client_context, :deadline_ms

    def initialize(headers)
      @deadline_ms = headers['Lambda-Runtime-Deadline-Ms'].to_i
      @aws_request_id = headers['Lambda-Runtime-Aws-Request-Id']
      @invoked_function_arn = headers['Lambda-Runtime-Invoked-Function-Arn']
      @log_group_name = ENV['AWS_LAMBDA_LOG_GROUP_NAME']
      @log_stream_name = ENV['AWS_LAMBDA_LOG_STREAM_NAME']
      @function_name = ENV['AWS_LAMBDA_FUNCTION_NAME']
      @memory_limit_in_mb = ENV['AWS_LAMBDA_FUNCTION_MEMORY_SIZE']
      @function_version = ENV['AWS_LAMBDA_FUNCTION_VERSION']
      identity = headers['Lambda-Runtime-Cognito-Identity'].to_s
      @identity = JSON.parse(identity) unless identity.empty?
      tenant = headers['Lambda-Runtime-Aws-Tenant-Id'].to_s
      @tenant_id = tenant unless tenant.empty?
      client_context = headers['Lambda-Runtime-Client-Context'].to_s
      @client_context = JSON.parse(client_context) unless client_context.empty?
    end

    def get_remaining_time_in_millis # rubocop:disable Naming/AccessorMethodName
      remaining = @deadline_ms - Process.clock_gettime(Process::CLOCK_REALTIME, :millisecond)
      remaining.positive? ? remaining : 0
    end
  end

  def self.log_error(message, err)
    puts message
    puts JSON.pretty_generate(err.to_lambda_response)
  end
end

# The function's handler (named as in Lambda's Ruby runtime, so that a missing
# handler method reads `undefined method `x' for #<LambdaHandler ...>` there too).
class LambdaHandler
  attr_reader :handler_file_name, :handler_method_name

  def initialize(env_handler:)
    parts = env_handler.split('.')
    case parts.size
    when 2 then @handler_file_name, @handler_method_name = parts
    when 3 then @handler_file_name, @handler_class, @handler_method_name = parts
    else
      raise ArgumentError, "Invalid handler #{parts}, must be of form FILENAME.METHOD or FILENAME.CLASS.METHOD " \
                           'where FILENAME corresponds with an existing Ruby source file FILENAME.rb, CLASS is an ' \
                           'optional module/class namespace and METHOD is a callable method. If using CLASS, ' \
                           'METHOD must be a class-level method.'
    end
  end

  # [body, content type] for the handler's result.
  def call_handler(request:, context:)
    opts = { event: request, context: context }
    response = if @handler_class
                 Kernel.const_get(@handler_class).send(@handler_method_name, **opts)
               else
                 __send__(@handler_method_name, **opts)
               end
    case response
    when StringIO, IO then [response, 'application/unknown']
    else [response.to_json, 'application/json']
    end
  end
end

module NimbusLambdaRuntime
  def self.run
    address = ENV['AWS_LAMBDA_RUNTIME_API']
    if address.nil? || address.empty?
      puts 'Failed to get runtime server address from AWS_LAMBDA_RUNTIME_API env variable'
      exit(-2)
    end
    handler_spec = ENV['_HANDLER']
    if handler_spec.nil?
      puts 'No handler specified, exiting Runtime Interface Client.'
      exit
    end
    setup_paths
    ::Logger.prepend(LoggerPatch)
    client = RuntimeClient.new(address)

    begin
      handler = LambdaHandler.new(env_handler: handler_spec)
      require handler.handler_file_name
    rescue Exception => e # rubocop:disable Lint/RescueException -- any load failure, incl. SyntaxError
      err = ReportedError.new(e, 'Init')
      log_error("Init error when loading handler #{handler_spec}", err)
      client.error('/init/error', err)
      exit(-4)
    end

    loop do
      resp = begin
        client.next_invocation
      rescue StandardError => e
        puts "Runtime API unavailable: #{e.message}"
        exit(-2)
      end
      exit_code = invoke(client, handler, resp)
      exit(exit_code) if exit_code
    end
  end

  # Runs one invocation; an exit code when the runtime must stop afterwards.
  def self.invoke(client, handler, resp)
    request_id = resp['Lambda-Runtime-Aws-Request-Id']
    $_global_aws_request_id = request_id
    trace_id = resp['Lambda-Runtime-Trace-Id']
    if trace_id && !trace_id.empty?
      ENV['_X_AMZN_TRACE_ID'] = trace_id
    else
      ENV.delete('_X_AMZN_TRACE_ID')
    end
    begin
      context = LambdaContext.new(resp)
      content_type = resp['Content-Type']
      raw = resp.body.to_s
      event = if raw.empty?
                nil
              elsif content_type.nil? || content_type.start_with?('application/json')
                JSON.parse(raw)
              else
                resp.body
              end
      body, content_type = handler.call_handler(request: event, context: context)
      body = body.read if content_type == 'application/unknown'
    rescue NoMethodError, NameError => e
      return critical(client, request_id, e)
    rescue StandardError => e
      err = ReportedError.new(e, 'Function')
      log_error('Error raised from handler method', err)
      client.error("/invocation/#{request_id}/error", err)
      return nil
    rescue Exception => e # rubocop:disable Lint/RescueException -- SystemExit, ScriptError, ...
      return critical(client, request_id, e)
    end
    client.respond(request_id, body, content_type)
    nil
  end

  def self.critical(client, request_id, exc)
    err = ReportedError.new(exc, 'Function')
    log_error('Critical exception from handler', err)
    client.error("/invocation/#{request_id}/error", err)
    -1
  end
end

NimbusLambdaRuntime.run if $PROGRAM_NAME == __FILE__ || File.expand_path($PROGRAM_NAME) == NimbusLambdaRuntime::RUNTIME_FILE
