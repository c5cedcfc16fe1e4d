/**
 * The type every LearnTrack dashboard JSON must satisfy: Grafana's own `Dashboard` model from
 * @grafana/schema (the classic, file-provisioned JSON model: `panels`, `templating`, `schemaVersion`),
 * narrowed where that type leaves holes (`Record<string, unknown>`):
 *
 *   - panel `options` / `fieldConfig.defaults.custom`: the panel plugin's own `Options` / `FieldConfig`
 *     from @grafana/schema's generated panelcfg types, chosen by the panel's `type`; a panel type not
 *     listed here is rejected;
 *   - `fieldConfig.overrides[].properties[]`: the `id` must name a FieldConfig property (or
 *     `custom.<property>` of the panel's FieldConfig), and `value` must have that property's type;
 *   - `targets`: the query model of the two data source plugins we provision
 *     (hadesarchitect-cassandra-datasource, redis-datasource), written after their sources;
 *   - `transformations`: the transformer ids we use, with their options.
 *
 * Every object literal is checked exactly: unknown or misspelled keys fail (TypeScript's excess
 * property check), as do wrong value types. Grafana stores its string enums (e.g. ThresholdsMode,
 * FieldColorModeId) as plain strings in JSON, so `Json<T>` maps each enum to the union of its values.
 */
import type {
  Dashboard,
  DashboardLink,
  FieldConfig as BaseFieldConfig,
  MatcherConfig,
  RowPanel,
  VariableModel,
} from '@grafana/schema';
import type * as BarChart from '@grafana/schema/dist/esm/raw/composable/barchart/panelcfg/x/BarChartPanelCfg_types.gen';
import type * as BarGauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as PieChart from '@grafana/schema/dist/esm/raw/composable/piechart/panelcfg/x/PieChartPanelCfg_types.gen';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as Text from '@grafana/schema/dist/esm/raw/composable/text/panelcfg/x/TextPanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/** A type as it appears in JSON: string enums become the union of their string values. */
export type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

// ------------------------------------------------------------------------------------ queries
export const CASSANDRA = 'hadesarchitect-cassandra-datasource';
export const REDIS = 'redis-datasource';

export type CassandraRef = {
  type: typeof CASSANDRA;
  uid: string;
}
export type RedisRef = {
  type: typeof REDIS;
  uid: string;
}

/** HadesArchitect/GrafanaCassandraDatasource src/models.ts `CassandraQuery` (raw CQL mode). */
export type CassandraQuery = {
  refId: string;
  datasource: CassandraRef;
  hide?: boolean;
  queryType: 'query' | 'alert';
  rawQuery: true;
  /** the CQL; its first column names the series (rows are grouped into one frame per value) */
  target: string;
  /** legend for numeric fields, e.g. "{{course_id}}" */
  alias?: string;
  instant?: boolean;
  filtering?: boolean;
}

/** RedisGrafana/grafana-redis-datasource src/redis/types.ts `RedisQuery`, the commands we use. */
type RedisBase = {
  refId: string;
  datasource: RedisRef;
  hide?: boolean;
  type: 'command';
  keyName: string;
  streaming?: false;
}
export type RedisQuery =
  | (RedisBase & { command: 'get' | 'hgetall' | 'hlen' | 'scard' | 'ttl' | 'type' })
  | (RedisBase & { command: 'hget'; field: string })
  | (RedisBase & {
      command: 'zrange';
      /** '' (index range) or 'BYSCORE' / 'BYLEX' */
      zrangeQuery?: '' | 'BYSCORE' | 'BYLEX';
      min: string;
      max: string;
    });

/** Each query type, with every key of the other ones forbidden (so a stray key still fails). */
type UnionKeys<T> = T extends unknown ? keyof T : never;
type Exclusive<T> = T extends unknown ? T & { [K in Exclude<UnionKeys<Target>, keyof T>]?: never } : never;
type Target = CassandraQuery | RedisQuery;
export type PanelTarget = Exclusive<Target>;

/** Variable queries: the Cassandra plugin's VariableQueryEditor stores { query }; Redis takes a command string. */
export type LearnTrackVariable =
  | (Json<Omit<VariableModel, 'datasource' | 'query'>> & { type: 'query'; datasource: CassandraRef; query: { query: string } })
  | (Json<Omit<VariableModel, 'datasource' | 'query'>> & { type: 'query'; datasource: RedisRef; query: string })
  | (Json<Omit<VariableModel, 'datasource'>> & { type: 'constant' | 'textbox' | 'custom' | 'interval'; datasource?: never });

// ------------------------------------------------------------------------------- transformations
/** The transformer ids used here (grafana/packages/grafana-data/src/transformations/transformers). */
export type Transformation =
  | { id: 'organize'; disabled?: boolean; options: { excludeByName?: Record<string, boolean>; includeByName?: Record<string, boolean>; indexByName?: Record<string, number>; renameByName?: Record<string, string> } }
  | { id: 'sortBy'; disabled?: boolean; options: { fields?: Record<string, never>; sort: Array<{ field: string; desc?: boolean }> } }
  | { id: 'reduce'; disabled?: boolean; options: { mode?: 'seriesToRows' | 'reduceFields'; reducers: Array<'lastNotNull' | 'last' | 'first' | 'max' | 'min' | 'mean' | 'sum' | 'count'>; includeTimeField?: boolean; labelsToFields?: boolean } }
  | { id: 'convertFieldType'; disabled?: boolean; options: { fields: Record<string, never>; conversions: Array<{ targetField: string; destinationType: 'number' | 'string' | 'time' | 'boolean' | 'other'; dateFormat?: string }> } }
  | { id: 'limit'; disabled?: boolean; options: { limitField: number } }
  | { id: 'merge'; disabled?: boolean; options: Record<string, never> };

// ------------------------------------------------------------------------------------ panels
type Override<Custom> = {
  matcher: Json<MatcherConfig>;
  properties: Array<
    | { [K in Exclude<keyof BaseFieldConfig, 'custom'>]-?: { id: K; value?: Json<BaseFieldConfig[K]> } }[Exclude<keyof BaseFieldConfig, 'custom'>]
    | { [K in keyof Custom & string]-?: { id: `custom.${K}`; value?: Json<Custom[K]> } }[keyof Custom & string]
  >;
};

type FieldConfigSourceOf<Custom> = {
  defaults: Json<Omit<BaseFieldConfig, 'custom'>> & { custom?: Partial<Json<Custom>> };
  overrides: Array<Override<Custom>>;
};

/** Grafana's Panel, with options / field config / targets typed by the panel plugin. */
type PanelOf<Type extends string, Options, Custom> = Json<
  Omit<import('@grafana/schema').Panel, 'type' | 'options' | 'fieldConfig' | 'targets' | 'transformations' | 'datasource' | 'links'>
> & {
  type: Type;
  id: number;
  title: string;
  gridPos: Json<import('@grafana/schema').GridPos>;
  datasource?: CassandraRef | RedisRef;
  options?: Partial<Json<Options>>;
  fieldConfig?: FieldConfigSourceOf<Custom>;
  targets?: PanelTarget[];
  transformations?: Transformation[];
  links?: Array<Json<DashboardLink>>;
};

export type LearnTrackPanel =
  | PanelOf<'table', Table.Options, Table.FieldConfig>
  | PanelOf<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>
  | PanelOf<'stat', Stat.Options, {}>
  | PanelOf<'barchart', BarChart.Options, BarChart.FieldConfig>
  | PanelOf<'bargauge', BarGauge.Options, {}>
  | PanelOf<'piechart', PieChart.Options, PieChart.FieldConfig>
  | PanelOf<'text', Text.Options, {}>;

type LearnTrackRow = Json<Omit<RowPanel, 'panels' | 'datasource'>> & { panels: LearnTrackPanel[] };

/** The dashboard: @grafana/schema's Dashboard, with the panel/variable holes narrowed as above. */
export type LearnTrackDashboard = Json<Omit<Dashboard, 'panels' | 'templating' | 'links'>> & {
  uid: string;
  title: string;
  panels: Array<LearnTrackPanel | LearnTrackRow>;
  templating?: { list: LearnTrackVariable[] };
  links?: Array<Json<DashboardLink>>;
};

/** Compile-time proof that LearnTrackDashboard only narrows Grafana's Dashboard (never widens it). */
type Assignable<A, B> = [A] extends [B] ? true : false;
const narrowsGrafana: Assignable<LearnTrackDashboard, Json<Dashboard>> = true;
void narrowsGrafana;
