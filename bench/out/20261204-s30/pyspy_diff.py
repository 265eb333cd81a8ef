import re, collections, sys
def load(p):
    self_=collections.Counter(); incl=collections.Counter(); tot=collections.Counter()
    for line in open(p):
        stack, _, n = line.rstrip().rpartition(' ')
        n=int(n); frames=stack.split(';')
        if len(frames)<2: continue
        th='main' if 'MainThread' in frames[0] else 'other'
        if th=='main' and not any('_run_once (' in f for f in frames): continue
        if any('aclose' in f or 'Engine.open' in f for f in frames): continue
        if 'Condition.wait' in frames[-1]: continue
        fr=[re.sub(r' \((.*?):\d+\)', r' (\1)', f).replace('/work/main/src/convoy/','') for f in frames[1:]]
        self_[fr[-1]]+=n; tot[th]+=n
        for f in set(fr): incl[f]+=n
    return self_,incl,tot
b=load(sys.argv[1]); t=load(sys.argv[2])
print(b[2], t[2], sum(t[2].values())/sum(b[2].values()))
B=sum(b[2].values())
i=0 if sys.argv[3]=='self' else 1
keys=set(b[i])|set(t[i])
for k in sorted(keys, key=lambda k: -(t[i][k]-b[i][k]))[:int(sys.argv[4])]:
    print('%7d %7d %+6.2f%%  %s'%(b[i][k],t[i][k],100*(t[i][k]-b[i][k])/B, k[:140]))
